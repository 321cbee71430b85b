"""Floor alerts: rules evaluated against live figures, raised and cleared with hysteresis (docs/alerts.md)."""

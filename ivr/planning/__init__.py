"""Workforce planning: volume and handle-time forecasts, Erlang C / Erlang A staffing (docs/planning.md)."""

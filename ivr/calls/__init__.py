"""The per-call application on a worker: a call session (answer, plan, queue, agent, close), its
speech/key questions, queue announcements, callbacks, and what it writes on the call record."""

"""scheduler_api: keeps a Formula 1 data store fresh on a race-calendar-aware schedule."""

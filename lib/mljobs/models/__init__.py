"""Model artifacts shared by the tune, explain and (later) serving jobs."""

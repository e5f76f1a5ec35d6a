"""`lapse demo`: a demo email service (its own database, realistic data) and lapse on it."""

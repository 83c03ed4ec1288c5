"""Attendance: the pure day rules, whose a punch is, and the reads built on them."""

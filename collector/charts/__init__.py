"""Pictures where people would rather look than read, drawn on the server as SVG (standard library only).

- ``day``: a site's day for its foreman: in and out per hour, and the headcount over the day as a step
  line, in the site's time, from the kept days of that day (and the night before).
- ``month``: days worked per worker over a site's month (the 考勤表's count), sorted; a histogram past
  what one bar a worker can show on a phone.
- ``arrears``: wages overdue by site and by employer, from the arrears the daemon keeps.
- ``calendar``: a worker's month as a calendar grid (worked, paid, to check, disputed, no record), from
  that worker's own days, disputes and wage rows.

``svg`` draws (no data source, no I/O): every text from outside is made visible and escaped there, in one
place. ``words`` gives the labels from the pages' catalogs, so a chart and its page never name one thing
two ways. Each picture has a ``viewBox`` and ``width="100%"``: it reads on a 412 px phone, scales on a
desk and prints on A4; every series has a pattern or a mark beside its colour, so it prints in black and
white too. The pages insert a chart as parsed SVG (static/charts.js), the CLI writes it as a file
(`collector chart`).
"""

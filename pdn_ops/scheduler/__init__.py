"""The single scheduler: collector and maintenance jobs on APScheduler 3, run by exactly one process.

``jobs`` declares what runs (built from the inventory and a collector factory), ``wrapper`` is the one wrapper
every job goes through, ``leader`` elects the one process that schedules, ``service`` ties them to the app.
"""

"""Seeing a farm: ``mpifarmer status``, the progress a farmer prints, ``mpifarmer events``,
``mpifarmer report`` and its plots.

Everything here reads the work directory without its lock and writes nothing into it; the
figures (rates, ETAs, when a progress line is due, utilization, percentiles) are pure functions
of what was read and of the time, passed in.
"""

"""The end-to-end benchmark's parts: ``procs`` (processes, ``/proc``), ``wrk`` (load and its
numbers), ``peers`` (how each server under test is started), ``report`` (tables, plots, machine).
``bench/e2e.py`` puts them together; bench/README.md describes the method."""

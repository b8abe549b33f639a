"""Tools for trying and testing actionhooks, not used by the service itself.

- ``demo``: ``actionhooks demo``, the whole path end to end in one process.
- ``traffic``: realistic traffic (the event types' mix and rates of a typical account), its messages the
  catalogue's samples (``catalog.samples``).
- ``receiver``: a loopback HTTP receiver playing the customer's system (``python -m actionhooks.devtools.receiver``).
- ``procs``: child processes of the service for tests and benchmarks: free ports, start-up waits, stopping.
- ``browser``: Debian's Chromium driven by Selenium (the console's tests and screenshots).
- ``threaded``: the service and a receiver in a thread of their own, for blocking callers (a browser driver).
- ``screenshots``: ``make screenshots``, every console page in English and Russian.
"""

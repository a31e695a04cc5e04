"""``sfi eval``: engines compared on the user's own footage, offline (``run``: material and scores,
``metrics``: the measures as numpy functions, ``report``: terminal table and HTML report)."""

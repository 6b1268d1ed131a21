"""The paper's claims, checked against this workflow's results: the verdict rules and the
statistics they rest on (``verdicts``), the reading of the results (``results``), the claims of
each part of the paper (``training``: Sec. 4.1, Fig. 1–2, App. B.1; ``spectrum``: App. B.2;
``lyapunov``: App. C.1–C.2; ``divergence``: Fig. 3, App. C.3–C.5, A.8), and the table they
make, with its Markdown and HTML (``table``)."""

"""Stage three: one probe of one URL, from resolve to verdict, into a
:class:`~daemon.model.ProbeResult`.

``prober`` holds the deadline, the redirects and the result; ``connection`` resolves, applies
the block list, connects and shakes hands; ``kernel_clock`` reads the kernel's timestamps of a
plain-http exchange; ``exchange`` sends one request, reads its body and evaluates the answer;
``classify`` turns every failure into an error kind and one readable line.
"""

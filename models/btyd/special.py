"""Gauss's hypergeometric function 2F1 of plain floats, for the per-customer hot path.

`scipy.special.hyp2f1` is a ufunc: on plain floats each call still pays for its
dispatch and 0-d arrays, about three quarters of its cost. `cython_special` exposes
the same kernel as a plain function, with the same values (a float, not numpy's).

>>> from scipy.special import hyp2f1
>>> hyp2f1_of_floats(1.3, 0.6, 2.3, 0.4) == float(hyp2f1(1.3, 0.6, 2.3, 0.4))
True
>>> type(hyp2f1_of_floats(1.3, 0.6, 2.3, 0.4))
<class 'float'>
"""

from __future__ import annotations

from scipy.special import cython_special

hyp2f1_of_floats = cython_special.hyp2f1

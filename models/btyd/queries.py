"""The per-customer questions both purchase models answer the same way, from their
`survival` (P(alive), P(no purchase in a window)) and `cumulative` (expected
purchases): Pareto/NBD and BG/NBD inherit them."""

from __future__ import annotations


class SurvivalQueries:
    __slots__ = ()

    def p_alive(self, x: int, t_x: float, T: float) -> float:
        """P(still alive at T | x, t_x, T)."""
        return self.survival(x, t_x, T, None)[0]  # type: ignore[attr-defined]

    def expected_purchases(self, x: int, t_x: float, T: float, t: float) -> float:
        """E[purchases in (T, T+t] | x, t_x, T]."""
        return self.cumulative(x, T, self.p_alive(x, t_x, T), (t,))[0]  # type: ignore[attr-defined]

    def p_no_purchase(self, x: int, t_x: float, T: float, t: float) -> float:
        """P(no purchase in (T, T+t] | x, t_x, T); does not collapse to 1 - P(alive)."""
        return self.survival(x, t_x, T, t)[1]  # type: ignore[attr-defined]

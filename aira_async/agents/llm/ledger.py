"""The LLM ledger: dollars per call from a price table, and a $ cap that counts calls in flight.

Before a call starts, `Ledger.reserve` books its largest possible cost (the prompt's estimated
tokens plus `max_tokens` of output at the model's prices); when the call ends,
`Reservation.settle` replaces the booking with the real cost. A call is refused when what was
spent plus what is booked plus its own booking would pass the cap, so concurrent calls can never
overshoot it together. The first refusal calls `on_cap` (the daemon stops taking new steps).

The durable ledger is the archive's `llm_calls` table (tokens, $, latency and retries per call,
per agent and island: `aira query costs`); this in-memory one starts from the run's stored total
on resume, and replayed replies cost nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from aira_async.errors import AiraError

__all__ = ["CostCapReached", "Ledger", "Price", "PriceTable", "Reservation"]

log = logging.getLogger(__name__)

CHARS_PER_TOKEN = 3.0
"""A conservative characters-per-token ratio for estimating a prompt before sending it."""


class CostCapReached(AiraError):
    """Raised by `Ledger.reserve` when a call could take the run past `llm.cost_cap_usd`."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Price:
    """USD per million input and output tokens."""

    input_per_mtok: float
    output_per_mtok: float

    def cost(self, tokens_in: int, tokens_out: int) -> float:
        return (tokens_in * self.input_per_mtok + tokens_out * self.output_per_mtok) / 1e6


class PriceTable:
    """Prices by model name (`[llm.prices."model"]`); a model without an entry costs 0."""

    def __init__(self, prices: Mapping[str, Mapping[str, Any]]) -> None:
        self._prices = {
            model: Price(
                input_per_mtok=float(p["input_per_mtok"]),
                output_per_mtok=float(p["output_per_mtok"]),
            )
            for model, p in prices.items()
        }
        self._warned: set[str] = set()

    def __contains__(self, model: object) -> bool:
        return model in self._prices

    def price(self, model: str) -> Price:
        found = self._prices.get(model)
        if found is None:
            if model not in self._warned:
                self._warned.add(model)
                log.warning("llm.prices has no entry for model %r: its calls count as $0", model)
            return Price(input_per_mtok=0.0, output_per_mtok=0.0)
        return found

    def cost(self, model: str, tokens_in: int, tokens_out: int) -> float:
        return self.price(model).cost(tokens_in, tokens_out)


class Reservation:
    """The booking of one call in flight; settle it exactly once (settling again is a no-op)."""

    def __init__(self, ledger: Ledger, amount_usd: float, agent: str) -> None:
        self._ledger = ledger
        self.amount_usd = amount_usd
        self.agent = agent
        self._open = True

    def settle(self, cost_usd: float) -> None:
        """Replace the booking by the real cost (0 for a call that never reached the server)."""
        if self._open:
            self._open = False
            self._ledger._settle(self, cost_usd)


class Ledger:
    """Dollars spent and booked in one run. Owned by the daemon; used on one event loop.

    Args:
        prices: the price table.
        cap_usd: the run's cap, or None.
        spent_usd: what the run's stored calls already cost (on resume).
        on_cap: called once, with a reason, the first time the cap refuses a call.
    """

    def __init__(
        self,
        prices: PriceTable,
        *,
        cap_usd: float | None = None,
        spent_usd: float = 0.0,
        on_cap: Callable[[str], None] | None = None,
    ) -> None:
        self.prices = prices
        self.cap_usd = cap_usd
        self.spent_usd = spent_usd
        self.booked_usd = 0.0
        self.by_agent: dict[str, float] = {}
        self.n_in_flight = 0
        self._on_cap = on_cap
        self._capped = False

    @property
    def capped(self) -> bool:
        return self._capped

    def estimate(self, model: str, prompt_chars: int, max_tokens: int) -> float:
        """The largest cost of a call: its prompt (estimated) plus `max_tokens` of output."""
        return self.prices.cost(model, int(prompt_chars / CHARS_PER_TOKEN) + 1, max_tokens)

    def reserve(self, agent: str, amount_usd: float) -> Reservation:
        """Book `amount_usd` for a call about to start.

        Raises:
            CostCapReached: the spent plus booked dollars plus this booking exceed the cap.
        """
        if self.cap_usd is not None:
            total = self.spent_usd + self.booked_usd + amount_usd
            if self._capped or total > self.cap_usd:
                reason = (
                    f"cost cap ${self.cap_usd:.2f} reached (spent ${self.spent_usd:.4f},"
                    f" ${self.booked_usd:.4f} in flight, next call up to ${amount_usd:.4f})"
                )
                self._trip(reason)
                raise CostCapReached(reason)
        self.booked_usd += amount_usd
        self.n_in_flight += 1
        return Reservation(self, amount_usd, agent)

    def _settle(self, reservation: Reservation, cost_usd: float) -> None:
        self.booked_usd = max(0.0, self.booked_usd - reservation.amount_usd)
        self.n_in_flight -= 1
        self.spent_usd += cost_usd
        self.by_agent[reservation.agent] = self.by_agent.get(reservation.agent, 0.0) + cost_usd
        if self.cap_usd is not None and self.spent_usd >= self.cap_usd:
            self._trip(f"cost cap ${self.cap_usd:.2f} reached (${self.spent_usd:.4f} spent)")

    def _trip(self, reason: str) -> None:
        """The first time the cap is hit: log it and tell the daemon to stop taking steps."""
        if not self._capped:
            self._capped = True
            log.warning("%s: no new LLM calls", reason)
            if self._on_cap is not None:
                self._on_cap("cost cap")

"""A small stock ledger for a village mill: grain in, flour out, losses accounted."""

from dataclasses import dataclass, field


@dataclass
class Lot:
    grain: str
    kilograms: float
    moisture: float  # fraction of weight that is water


@dataclass
class Ledger:
    lots: list[Lot] = field(default_factory=list)
    milled_kg: float = 0.0

    def receive(self, grain: str, kilograms: float, moisture: float) -> Lot:
        if kilograms <= 0:
            raise ValueError("a delivery must weigh something")
        if not 0.0 <= moisture < 0.5:
            raise ValueError("moisture must be a fraction below 0.5")
        lot = Lot(grain, kilograms, moisture)
        self.lots.append(lot)
        return lot

    def dry_weight(self, grain: str) -> float:
        return sum(l.kilograms * (1 - l.moisture) for l in self.lots if l.grain == grain)

    def mill(self, grain: str, kilograms: float, extraction: float = 0.75) -> float:
        """Mill `kilograms` of a grain and return the flour produced.

        Extraction is the share of grain weight that becomes flour; the rest is bran."""
        available = sum(l.kilograms for l in self.lots if l.grain == grain)
        if kilograms > available:
            raise ValueError(f"only {available:.1f} kg of {grain} in stock")
        remaining = kilograms
        for lot in [l for l in self.lots if l.grain == grain]:
            take = min(lot.kilograms, remaining)
            lot.kilograms -= take
            remaining -= take
            if remaining == 0:
                break
        self.lots = [l for l in self.lots if l.kilograms > 0]
        self.milled_kg += kilograms
        return kilograms * extraction

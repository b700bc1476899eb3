"""``cartwise customers …``: compute the customers' RFM segments and show them."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from engine.crm.service import parse_as_of
from engine.errors import CartwiseError
from serving.cli_common import console, fail, settings_from_env

customers_app = typer.Typer(help="Customers: RFM segments.", no_args_is_help=True)


@customers_app.command("segments")
def segments(
    as_of: Annotated[
        str | None,
        typer.Option(help="Score as of this date (its end, UTC) or datetime; default: now."),
    ] = None,
    lookback_days: Annotated[int, typer.Option(min=1, help="Orders of this many days.")] = 365,
) -> None:
    """Compute every customer's RFM scores and segment (replacing the last batch) and print
    the customers per segment."""
    from serving.bootstrap import bootstrap

    err = Console(stderr=True)
    container = bootstrap(settings_from_env(), load_models=False)
    try:
        result = container.crm.compute(as_of=parse_as_of(as_of), lookback_days=lookback_days)
        print_segments(result, container.crm.summary())
    except CartwiseError as exc:
        raise fail(err, exc) from None
    finally:
        container.close()


def print_segments(result: dict[str, Any], summary: dict[str, Any]) -> None:
    table = Table(
        title=f"customer segments as of {result['as_of']:%Y-%m-%d %H:%M} UTC "
        f"({result['lookback_days']} days of orders)"
    )
    for name in ("segment", "customers", "share", "avg value", "avg orders"):
        table.add_column(name, justify="left" if name == "segment" else "right")
    for row in summary["segments"]:
        table.add_row(
            row["segment"],
            str(row["customers"]),
            f"{row['share']:.1%}",
            f"{row['avg_monetary']:.2f}",
            f"{row['avg_frequency']:.2f}",
        )
    console.print(table)
    console.print(
        f"{result['customers']} customers scored in {result['duration_ms']:.0f} ms; "
        f"attributes written {result['attributes_written']}, "
        f"removed {result['attributes_removed']}"
        + (
            f"; {result['unconverted_orders']} orders without an FX rate left out of value"
            if result["unconverted_orders"]
            else ""
        )
    )

"""The BI schema's agency name on PostgreSQL: only a firm's name with a legal form as written reaches BI in clear
(the views as SQL text, no database: tests/unit/test_bi_views.py).

They run for real on PostgreSQL as the BI role in tests/stack/test_access_roles.py; Redshift's statements
are in tests/unit/test_redshift_access.py.
"""

from __future__ import annotations

import pytest

# Real firms' names as they appear in ads and registers, and private landlords' names that contain the
# letters of a legal form (issue #23: the old test showed every one of the second list as a company).
FIRMS = [
    "Adler Greta Immobilien GmbH",
    "Hausverwaltung Brandt e.K.",
    "Immobilien Schulze e.Kfm.",
    "Deutsche Wohnen SE",
    "Vonovia SE",
    "ADLER Real Estate AG",
    "degewo AG",
    "Müller Immobilien GmbH & Co. KG",
    "Lehmann Grundbesitz KG",
    "Schmidt Hausverwaltung UG (haftungsbeschränkt)",
    "Wohnen am See GbR",
    "Meyer & Partner OHG",
    "Berliner Bau- und Wohnungsgenossenschaft von 1892 eG",
    "HOWOGE Wohnungsbaugesellschaft mbH",
    "Wertgrund Immobilien KGaA",
    "Kanzlei Weber PartG mbB",
    "Gewobag Wohnungsbau-Aktiengesellschaft Berlin",
    "Grand City Property Ltd.",
    "Stadtwerk gGmbH",
    "AKELIUS GMBH",
]
PRIVATE = [
    "Greta Sommer",
    "Anna Ek",
    "Se-Jin Park",
    "Inge Eg",
    "Familie Kg Müller",
    "Ug Nguyen",
    "Sebastian Ag",
    "Jae-Se Kim",
    "Takeshi Ohgami",
    "Agnes Kgosi",
    "Familie Se",
    "E. K. Lehmann",
    "Gebr. Schulz",
    "SE-JIN PARK",
    "INGE EG",
    "FAMILIE KG MÜLLER",
]


def _agency_name_expression() -> str:
    """The view's own CASE for agency_name (sql/access/create_view_flats.sql), as the warehouse runs it."""
    from berlin_rentals.warehouse.sql import SQL_DIR

    body = (SQL_DIR / "access" / "create_view_flats.sql").read_text()
    case = body[body.index("    CASE\n") : body.index(" AS agency_name")]
    return case.replace("ag.company", "n.name")


@pytest.mark.stack
def test_only_a_name_with_a_legal_form_as_written_reaches_bi_in_clear(warehouse):
    import sqlalchemy as sa

    from tasks.common import warehouse_engine

    names = FIRMS + PRIVATE
    values = ", ".join(f"(:n{i})" for i in range(len(names)))
    query = sa.text(f"SELECT n.name, {_agency_name_expression()} AS shown FROM (VALUES {values}) AS n (name)")
    with warehouse_engine(warehouse.warehouse_url).connect() as conn:
        shown = dict(conn.execute(query, {f"n{i}": name for i, name in enumerate(names)}).all())
    assert [n for n in PRIVATE if shown[n] is not None] == []
    assert [n for n in FIRMS if shown[n] != n] == []

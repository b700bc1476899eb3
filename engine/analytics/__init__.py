"""Operations analytics: KPIs and the view → cart → purchase funnel, as SQL aggregates over
the commerce core, the decision logs and the pricing audit (see docs/analytics.md)."""

"""Dynamic pricing, offline side: price elasticities from sales history and a market simulator."""

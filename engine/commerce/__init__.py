"""The commerce core: customers, catalogue, warehouses and stock, orders, payments."""

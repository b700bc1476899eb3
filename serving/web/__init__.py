"""Pages people see: the storefront widget, the demo store, the operations dashboard."""

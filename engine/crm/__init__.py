"""Customer relationship: RFM scores and segments, computed in batch and kept per customer."""

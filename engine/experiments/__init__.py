"""A/B tests: experiments over a widget, the recommender or a quote-time pricing rule."""

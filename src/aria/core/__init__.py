"""Core framework: channels, streams, events, state, resilience, config, logging, metrics."""

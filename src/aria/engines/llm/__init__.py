"""Language model adapters (``llm:<backend>``), imported lazily by the engine registry."""

"""The turn pipeline: audio or text in, transcript, text tokens and speech out."""

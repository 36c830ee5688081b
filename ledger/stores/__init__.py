"""Durable event stores behind the eventsourcing library's recorder interface."""

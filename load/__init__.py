"""Locust user classes, load shapes and the HTTP gateway used under load."""

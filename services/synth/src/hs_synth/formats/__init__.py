"""Serializers: each institution's wire format."""

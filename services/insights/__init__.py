"""The insights service: answers questions on the read models over gRPC."""

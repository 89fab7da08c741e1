"""Generated protobuf code of the insights API (make protos)."""

"""Generated protobuf code of the deal context (make protos)."""

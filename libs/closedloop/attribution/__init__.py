"""Generated protobuf code of the attribution context (make protos)."""

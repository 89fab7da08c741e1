"""Generated protobuf code of the consent context (make protos)."""

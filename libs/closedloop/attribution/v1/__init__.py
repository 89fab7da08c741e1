"""Generated protobuf code (make protos) lives beside this file."""

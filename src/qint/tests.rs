//! The integer convolution and product against plain loops written from the ONNX spec.

"""MLServer's runtime for a Preflight bundle's ONNX model, as a team that
serves its ONNX files through MLServer writes one: a `MLModel` that runs ONNX
Runtime on the Open Inference Protocol's named inputs, one `[rows, 1]` tensor
each, fed as the graph's own input types, and answers each graph output under
its name. Decoding, nulls, errors and routes are MLServer's own."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
from mlserver import MLModel, types
from mlserver.codecs import NumpyCodec, StringCodec
from mlserver.utils import get_model_uri

# The graph's input types, as numpy reads the request's data into them.
FEED_TYPES = {"tensor(float)": np.float32, "tensor(double)": np.float64, "tensor(int64)": np.int64}


class OnnxModel(MLModel):
    async def load(self) -> bool:
        uri = await get_model_uri(self._settings)
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        self._session = ort.InferenceSession(uri, options, providers=["CPUExecutionProvider"])
        self._inputs = {i.name: i.type for i in self._session.get_inputs()}
        return True

    async def predict(self, payload: types.InferenceRequest) -> types.InferenceResponse:
        feeds = {}
        for tensor in payload.inputs:
            kind = self._inputs.get(tensor.name)
            if kind == "tensor(string)":
                # MLServer's numpy codec reads BYTES as one byte buffer; text
                # is its string codec's, a value per row.
                values = np.array(StringCodec.decode_input(tensor), dtype=object)
            else:
                values = NumpyCodec.decode_input(tensor).astype(FEED_TYPES.get(kind, np.float32))
            feeds[tensor.name] = values.reshape(-1, 1)
        outputs = []
        for meta, value in zip(self._session.get_outputs(), self._session.run(None, feeds)):
            outputs.append(NumpyCodec.encode_output(name=meta.name, payload=np.asarray(value)))
        return types.InferenceResponse(model_name=self.name, model_version=self.version, outputs=outputs)

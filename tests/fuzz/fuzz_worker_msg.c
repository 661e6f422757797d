/* fuzz_worker_msg.c — the diffusion-worker protocol: a WorkerMsg from a worker (any program
 * that connects to --worker-bind) and a DispatchMsg as a worker reads it. The first byte picks
 * which; the rest is the frame. */
#include "cirrus.pb-c.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const ProtobufCMessageDescriptor *desc;
    if (size == 0)
        return 0;
    desc = data[0] & 1 ? &cirrus__v1__dispatch_msg__descriptor
                       : &cirrus__v1__worker_msg__descriptor;
    fuzz_pb_free(fuzz_pb_roundtrip(desc, data + 1, size - 1));
    return 0;
}

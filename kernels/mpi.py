"""MPI_Allreduce, called from inside the training kernels.

The step kernel sums each step's gradient across MPI ranks without coming
back to Python. ``MPI_Allreduce`` arrives as a plain integer address (taken by
``fastnn.distributed`` from the MPI library mpi4py loaded) and is called
through a pointer cast at run time. The compiled code therefore holds no
address of the process that compiled it and stays in numba's on-disk cache
(a ctypes or cffi function object inside a cached function would turn the
cache off), and a run without MPI never needs the symbol.

``MPI_Datatype``, ``MPI_Op`` and ``MPI_Comm`` are passed as 64-bit integers:
MPICH's handles are ``int`` and Open MPI's pointers; the calling convention
(x86-64 and AArch64) passes either in one 64-bit register.
"""

from llvmlite import ir
from numba import types
from numba.extending import intrinsic


@intrinsic
def allreduce(typingctx, fn, send, recv, count, datatype, op, comm):
    """``MPI_Allreduce(send, recv, count, datatype, op, comm)`` through the address ``fn``.

    ``send`` and ``recv`` are arrays (their data pointers are passed; they
    must not overlap); returns MPI's int error code.
    """
    if not (isinstance(send, types.Array) and isinstance(recv, types.Array)):
        return None
    sig = types.int32(types.int64, send, recv, types.intp, types.int64, types.int64,
                      types.int64)

    def codegen(context, builder, signature, args):
        address, send_arg, recv_arg, count_arg, datatype_arg, op_arg, comm_arg = args
        byte = ir.IntType(8).as_pointer()
        i32, i64 = ir.IntType(32), ir.IntType(64)
        fnty = ir.FunctionType(i32, [byte, byte, i32, i64, i64, i64])
        pointer = builder.inttoptr(address, fnty.as_pointer())
        send_data = context.make_array(signature.args[1])(context, builder, send_arg).data
        recv_data = context.make_array(signature.args[2])(context, builder, recv_arg).data
        return builder.call(pointer, [builder.bitcast(send_data, byte),
                                      builder.bitcast(recv_data, byte),
                                      builder.trunc(count_arg, i32),
                                      datatype_arg, op_arg, comm_arg])

    return sig, codegen

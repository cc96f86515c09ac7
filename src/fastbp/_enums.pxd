# The compiled core's codes, defined once in _enums.h.  cpdef makes each a
# Python IntEnum of fastbp._enums (member ACT_RELU, value FB_ACT_RELU), from
# which fastbp.names derives the names users write ("relu").

cdef extern from "_enums.h":
    cpdef enum Activation "fb_activation":
        ACT_IDENTITY "FB_ACT_IDENTITY"
        ACT_SIGMOID "FB_ACT_SIGMOID"
        ACT_TANH "FB_ACT_TANH"
        ACT_RELU "FB_ACT_RELU"
        ACT_LEAKY_RELU "FB_ACT_LEAKY_RELU"
        ACT_ELU "FB_ACT_ELU"
        ACT_SOFTPLUS "FB_ACT_SOFTPLUS"
        ACT_SILU "FB_ACT_SILU"

    cpdef enum Loss "fb_loss":
        LOSS_SQUARED_ERROR "FB_LOSS_SQUARED_ERROR"
        LOSS_CROSS_ENTROPY "FB_LOSS_CROSS_ENTROPY"
        LOSS_BINARY_CROSS_ENTROPY "FB_LOSS_BINARY_CROSS_ENTROPY"
        LOSS_POISSON "FB_LOSS_POISSON"

    cpdef enum Output "fb_output":
        OUT_NONE "FB_OUT_NONE"
        OUT_SOFTMAX "FB_OUT_SOFTMAX"
        OUT_EXP "FB_OUT_EXP"

    cpdef enum Reduction "fb_reduction":
        RED_SUM "FB_RED_SUM"
        RED_HALF "FB_RED_HALF"
        RED_MEAN "FB_RED_MEAN"

    cpdef enum Update "fb_update":
        UPD_NONE "FB_UPD_NONE"
        UPD_SGD "FB_UPD_SGD"
        UPD_MOMENTUM "FB_UPD_MOMENTUM"
        UPD_NESTEROV "FB_UPD_NESTEROV"
        UPD_ADAM "FB_UPD_ADAM"

    cpdef enum Damping "fb_damping":
        DAMP_IDENTITY "FB_DAMP_IDENTITY"
        DAMP_DIAGONAL "FB_DAMP_DIAGONAL"


# The code of a name of ``kind`` ("activation", "loss", "output", "reduction",
# "update", "damping"), or a ValueError listing the choices.
cpdef object code(str kind, object name)

# code() for an activation or a reduction as a C int (the kernels' hot path)
cdef int activation_code(object name) except -1
cdef int reduction_code(object name) except -1

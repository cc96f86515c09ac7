/* _enums.h -- the one definition of the compiled core's codes.
 *
 * C code (_fastmath.h) uses these names directly; _enums.pxd declares them
 * for Cython, which makes each enum a Python IntEnum in fastbp._enums, and
 * fastbp/names.py gives the names users write ("relu", "mean", ...).
 */
#ifndef FASTBP_ENUMS_H
#define FASTBP_ENUMS_H

/* a layer's activation g (hidden or output) */
enum fb_activation { FB_ACT_IDENTITY = 0, FB_ACT_SIGMOID = 1, FB_ACT_TANH = 2, FB_ACT_RELU = 3,
                     FB_ACT_LEAKY_RELU = 4, FB_ACT_ELU = 5, FB_ACT_SOFTPLUS = 6, FB_ACT_SILU = 7 };

/* the loss on the output; all but squared error take the output layer's
   logits Z and fuse its output activation in: cross entropy the softmax,
   binary cross entropy the sigmoid, Poisson exp */
enum fb_loss { FB_LOSS_SQUARED_ERROR = 0, FB_LOSS_CROSS_ENTROPY = 1,
               FB_LOSS_BINARY_CROSS_ENTROPY = 2, FB_LOSS_POISSON = 3 };

/* what inference applies to the logits beyond the layers' activations: the
   output activations that only a fused loss trains (a sigmoid output is the
   layer's own activation) */
enum fb_output { FB_OUT_NONE = 0, FB_OUT_SOFTMAX = 1, FB_OUT_EXP = 2 };

/* J scaled by 1 ("sum"), 1/2 ("half", seed 000) or 1/N ("mean") */
enum fb_reduction { FB_RED_SUM = 0, FB_RED_HALF = 1, FB_RED_MEAN = 2 };

/* the optimiser's update a compiled step makes after the gradient */
enum fb_update { FB_UPD_NONE = 0, FB_UPD_SGD = 1, FB_UPD_MOMENTUM = 2, FB_UPD_NESTEROV = 3,
                 FB_UPD_ADAM = 4 };

/* Levenberg-Marquardt's damping D in (JᵀJ + μD) δ = −Jᵀe: I (MATLAB
   trainlm's) or diag(JᵀJ) (Marquardt's scaling) */
enum fb_damping { FB_DAMP_IDENTITY = 0, FB_DAMP_DIAGONAL = 1 };

#endif

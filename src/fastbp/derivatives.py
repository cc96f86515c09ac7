"""Derivatives of an MLP beyond the parameter gradient: the methods
``input_jacobian``, ``input_gradient``, ``jvp``, ``vjp``, ``hvp``, ``gnvp``,
``param_jacobian`` and ``per_example_gradients`` of ``fastbp.MLP``.

``MLP`` inherits them from ``DerivativeMethods``.  Each checks and
converts its arguments once, then makes one call into the
compiled passes (``fastbp._derivatives``) without the GIL.  Shapes: N rows
of X, D_in = sizes[0], D_out = sizes[-1], P = n_params; flat parameter
vectors (tangents, Hv, Jacobian columns) use the layout of ``net.params``
(every W_ℓ row-major, then every b_ℓ).  Every array a method returns may be
given as ``out=`` (a pair where it returns two): it is written and returned,
and nothing is allocated once the workspace exists.  ŷ is the network's
output as ``forward`` returns it (after softmax / exp).

Second derivatives: g″ is taken from the layers' outputs as g′ is (silu
from its pre-activation); relu's and leaky relu's kink count as g″ = 0, so
``hvp`` through them is the Hessian almost everywhere, as PyTorch's is.
The NumPy twins, written from the equations, are in ``fastbp.reference``.
"""

from fastbp.inputs import as_inputs, as_sample_weight, as_targets

__all__ = ["DerivativeMethods"]


def _x(net, X):
    return as_inputs(X, net.sizes[0], "X", check_finite=False)


def _loss_inputs(net, X, T, loss, reduction, sample_weight):
    """X, T, the row weights and the codes, checked as ``gradients`` checks them."""
    lc, rc = net.loss_codes(loss, reduction)
    X = _x(net, X)
    T = as_targets(T, X.shape[0], net.sizes[-1], loss, "T", check_finite=False)
    return X, T, as_sample_weight(sample_weight, X.shape[0]), {"loss": lc, "reduction": rc}


class DerivativeMethods:
    """The derivative methods of ``fastbp.MLP`` (which inherits them): each
    runs on the network's ``derivative_core`` under its lock (``in_use``)."""

    def input_jacobian(self, X, out=None):
        """J (N, D_out, D_in): J[i] = ∂ŷ_i/∂x_i, the Jacobian of example i's
        output in its input (after the output activation).

        One backward pass over a block of N·D_out cotangents (each layer one
        GEMM), or, where D_in < D_out, one forward pass of N·D_in tangents.
        """
        X = _x(self, X)
        with self.in_use("input_jacobian"):
            return self.derivative_core.input_jacobian(X, out)

    def input_gradient(self, X, T, loss="squared_error", reduction="sum", sample_weight=None, out=None):
        """(loss, dX): the loss on (X, T), as ``gradients`` takes it, and its
        gradient in the inputs, dX = ∂J/∂X (N, D_in): the δ of the first layer,
        which ``gradients`` skips."""
        X, T, w, codes = _loss_inputs(self, X, T, loss, reduction, sample_weight)
        with self.in_use("input_gradient"):
            return self.derivative_core.input_gradient(X, T, out, sample_weight=w, **codes)

    def jvp(self, X, dX=None, dparams=None, out=None):
        """(Y, dY): forward mode.  Y = ŷ(X) (N, D_out) and its tangent dY along
        an input tangent dX (N, D_in) and/or a parameter tangent dparams (P,)
        (at least one).  out: a pair (Y, dY) of (N, D_out) buffers."""
        X = _x(self, X)
        with self.in_use("jvp"):
            return self.derivative_core.jvp(X, dX, dparams, out)

    def vjp(self, X, dY, out=None):
        """(dX, dparams): reverse mode for the output cotangent dY (N, D_out):
        dX[i] = dY[i] ∂ŷ_i/∂x_i (N, D_in) and dparams = Σ_i dY[i] ∂ŷ_i/∂θ (P,).
        out: a pair (dX, dparams)."""
        X = _x(self, X)
        with self.in_use("vjp"):
            return self.derivative_core.vjp(X, dY, out)

    def hvp(self, X, T, v, loss="squared_error", reduction="sum", sample_weight=None, out=None):
        """Hv (P,): the exact Hessian of the loss (as ``gradients`` takes it) in
        the parameters, times v (P,), by Pearlmutter's R-operator: the forward
        pass, one forward pass of the tangent v, then the backward pass with its
        R-image, about three gradients' work."""
        X, T, w, codes = _loss_inputs(self, X, T, loss, reduction, sample_weight)
        with self.in_use("hvp"):
            return self.derivative_core.hvp(X, T, v, out, sample_weight=w, **codes)

    def gnvp(self, X, T, v, loss="squared_error", reduction="sum", sample_weight=None, out=None):
        """Gv (P,): the generalised Gauss-Newton matrix J_uᵀ H_u J_u times v,
        u what the loss takes (ŷ for squared error, the logits for a loss that
        fuses the output activation), H_u the loss's Hessian in u (the softmax
        Hessian for cross entropy).  Positive semi-definite; equal to ``hvp``
        for a linear network with squared error."""
        X, T, w, codes = _loss_inputs(self, X, T, loss, reduction, sample_weight)
        with self.in_use("gnvp"):
            return self.derivative_core.hvp(X, T, v, out, sample_weight=w, gauss_newton=True, **codes)

    def param_jacobian(self, X, out=None):
        """J (N·D_out, P): row i·D_out + k is ∂ŷ_ik/∂θ (example-major)."""
        X = _x(self, X)
        with self.in_use("param_jacobian"):
            return self.derivative_core.param_jacobian(X, out)

    def per_example_gradients(self, X, T, loss="squared_error", reduction="sum", sample_weight=None,
                              out=None):
        """G (N, P): row i is the gradient of example i's term of the reduced
        loss, so G.sum(axis=0) is the flat gradient ``gradients`` gives and the
        row norms are ``per_example_grad_norms`` (the cheap path to those)."""
        X, T, w, codes = _loss_inputs(self, X, T, loss, reduction, sample_weight)
        with self.in_use("per_example_gradients"):
            return self.derivative_core.per_example_gradients(X, T, out, sample_weight=w, **codes)

"""Loss Function Assessment: the LFA and gradient curves of any registered loss, and Figure 2 drawn from them."""

"""Pure `jax.numpy` maths of Nengo's neuron types (`neurons`, `rate`,
`spiking`) and synapses (`synapses`), used by the builders in `nengo_jax.ops`."""

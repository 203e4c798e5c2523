"""fastnn: fast dense neural networks on the CPU."""

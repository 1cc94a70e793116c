"""The MM-GAN family (Sharma & Hamarneh 2020): network configuration and networks."""

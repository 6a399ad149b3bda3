"""sniper's actors and the domain libraries they share.

The actors (`scheduler`, `fetcher` with `fetchers/`, `assembler`, `circuit`,
`discovery`, `flags`) run on the generic runtime in the top-level `runtime`
package, which knows nothing of them. The libraries here (`upstream`,
`routing`, `openapi`, `capabilities`, `scoring`, `metrics`) are sniper's own.
"""

"""Time as pagerd sees it: its one clock (and the wall clock's steps), and deadline timers.

In: Trio's clock, the wall and boot clocks. Out: `Clock` readings and `Timers` that fire at a
deadline. The engine, delivery and storage all use it, so it imports nothing else of pagerd.
"""

"""An example user package: a task factory that bench loads by name ("mypkg.tasks:make_task"), not built in."""

import ArgumentParser

/// The command-line habits of fence_virtd, shared by our daemons.
public struct DaemonOptions: ParsableArguments {
    @Flag(name: .customShort("F"), help: "Stay in the foreground (the default under systemd).")
    public var foreground = false

    @Option(name: .customShort("f"), help: ArgumentHelp("The configuration file.", valueName: "file"))
    public var configFile = "/etc/fence_virt.conf"

    @Option(name: .customShort("d"), help: ArgumentHelp("Debug level: 1 debug, 2 and up trace (overrides the file's 'debug').", valueName: "level"))
    public var debugLevel: Int?

    @Option(name: .customShort("p"), help: ArgumentHelp("Write the process id here; refuse to start if it names a running daemon.", valueName: "file"))
    public var pidFile: String?

    @Flag(name: .customShort("w"), help: "Wait for the backend to become available instead of exiting.")
    public var waitForBackend = false

    public init() {}
}

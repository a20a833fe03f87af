import ArgumentParser
import BuildInfo

@main
struct Fencectl: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fencectl",
        abstract: "The operator's tool for fence-router.",
        version: "fencectl \(BuildInfo.description)",
        subcommands: [KeygenCommand.self, ConfigCommand.self, ConfigureCommand.self, InventoryCommand.self, HostCommand.self, FenceCommand.self]
    )
}

/// `-f FILE`, as the daemons take it: every command that reads or writes the configuration.
struct ConfigFileOption: ParsableArguments {
    @Option(name: .customShort("f"), help: ArgumentHelp("The configuration file (the one the daemons read).", valueName: "file"))
    var configFile = "/etc/fence_virt.conf"
}

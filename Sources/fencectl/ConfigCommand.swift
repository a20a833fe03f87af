import DaemonSupport
import FenceBus
import FenceConfig
import JSONValue

struct ConfigureCommand: Subcommand {
    static let usage = Usage(
        path: ["configure"],
        abstract: "Ask the configuration questions and write the configuration file (as fence-routerd -c).",
        discussion: "The questions of fence_virtd -c, in its order, then those of the amqp backend. Enter keeps the answer in brackets; answers may be piped, one per line. The result is checked and shown, and written only after a yes.",
        options: [.configFile]
    )

    let file: String

    init(_ line: ParsedCommandLine) {
        file = line.value(defaulted: .configFile)
    }

    func run() -> ExitStatus {
        Configurator.run(path: file) == 0 ? .success : .failure
    }
}

struct ConfigCheckCommand: Subcommand {
    /// `-f FILE` as in the other commands, but without a default: the file may be an argument instead.
    static let fileOption = Usage.Option(short: "f", valueName: "file", help: "The file to check, as in the other subcommands.", completion: .files)
    static let skipFilesOption = Usage.Option.flag("skip-files", "Do not look at the key and certificate files (when checking a file meant for another machine).")

    static let usage = Usage(
        path: ["config", "check"],
        abstract: "Parse and validate a configuration; print the settings in effect, defaults included.",
        discussion: "Checks what fence-routerd reads (when the file has a fence_virtd block) and what fence-hostd reads (when it has both backends/amqp and backends/libvirt), and that the key files they name exist, are private and hold a usable key. Exits 1 with file:line:key on the first error.",
        arguments: [Usage.Argument(name: "file", help: "The file to check (default: /etc/fence_virt.conf).", isOptional: true, completion: .files)],
        options: [
            fileOption, .json, skipFilesOption,
        ]
    )

    let file: String
    let json: Bool
    let checkFiles: Bool

    init(_ line: ParsedCommandLine) throws(UsageError) {
        let (option, argument) = (line.value(Self.fileOption), line.argument(0))
        if let option, let argument, option != argument {
            throw UsageError("two files to check: -f \(option) and \(argument)")
        }
        file = option ?? argument ?? "/etc/fence_virt.conf"
        json = line.flag(.json)
        checkFiles = !line.flag(Self.skipFilesOption)
    }

    func run() -> ExitStatus {
        let report = ConfigurationCheck.run(file: file, checkFiles: checkFiles, hostname: Hostname.current())
        print(json ? report.json : report.text, terminator: "")
        if !json {
            for error in report.errors { StandardError.write("error: \(error)\n") }
        }
        return report.errors.isEmpty ? .success : .failure
    }
}

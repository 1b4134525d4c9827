"""The filter on the Spark JVM's stderr (pipelines/spark_quiet.py), without a JVM: a real pipe, real threads."""

from __future__ import annotations

import os
import threading

from pipelines.spark_quiet import LOG4J2_PROPERTIES, _copy_lines, driver_java_options


def test_only_the_jvm_start_up_notice_is_dropped_everything_else_is_copied():
    source_read, source_write = os.pipe()
    target_read, target_write = os.pipe()
    copier = threading.Thread(target=_copy_lines, args=(source_read, target_write), daemon=True)
    copier.start()
    for chunk in (b"WARNING: Using incubator modules: jdk.incubator.vector\nException in thr",
                  b"ead \"main\" java.lang.OutOfMemoryError\n", b"WARNING: something else\nno newline"):
        os.write(source_write, chunk)
    os.close(source_write)
    copier.join(timeout=10)
    assert not copier.is_alive()  # it closes both ends at EOF
    with os.fdopen(target_read, "rb") as copied:
        assert copied.read() == (b"Exception in thread \"main\" java.lang.OutOfMemoryError\n"
                                 b"WARNING: something else\nno newline")


def test_the_driver_gets_our_log4j2_configuration_at_the_level_asked_for():
    assert LOG4J2_PROPERTIES.is_file()  # shipped beside the module (package data)
    options = driver_java_options("WARN").split()
    assert options == [f"-Dlog4j2.configurationFile={LOG4J2_PROPERTIES.as_uri()}", "-Dforecaster.spark.logLevel=WARN"]
    assert driver_java_options("OFF -Dx=1").endswith("-Dforecaster.spark.logLevel=OFF")  # one option, no more

"""Run snmpsim 1.2.2's lite responder (one data file per UDP endpoint) under pysnmp 7.1.

Run by path with the snmpsim venv's Python (not part of the citydc package). snmpsim 1.2.2's
``--v2c-arch`` mode still calls pysnmp's pre-7 camelCase names and v2c-only MIB controller
methods; this adds those names as aliases of the pysnmp 7.1 ones, then runs snmpsim's own main.
"""

import sys

from pysnmp.carrier.asyncio.dispatch import AsyncioDispatcher
from pysnmp.proto import api

ALIASES = [(AsyncioDispatcher, "registerRecvCbFun", "register_recv_callback")]
for cls, old, new in ALIASES:
    if not hasattr(cls, old):
        setattr(cls, old, getattr(cls, new))
if not hasattr(api, "protoModules"):
    api.protoModules = api.PROTOCOL_MODULES
for pdu_api in (api.v1.apiPDU, api.v2c.apiPDU, api.v2c.apiBulkPDU):
    for old, new in (("setErrorStatus", "set_error_status"), ("setErrorIndex", "set_error_index")):
        if not hasattr(pdu_api, old):
            setattr(type(pdu_api), old, staticmethod(getattr(type(pdu_api), new)))

from snmpsim import controller  # noqa: E402


def _data_file_method(next_flag, set_flag):
    def method(self, var_binds, **context):
        return self._data_file.process_var_binds(var_binds, nextFlag=next_flag, setFlag=set_flag)
    return method


if not hasattr(controller.MibInstrumController, "readVars"):
    controller.MibInstrumController.readVars = _data_file_method(False, False)
    controller.MibInstrumController.readNextVars = _data_file_method(True, False)
    controller.MibInstrumController.writeVars = _data_file_method(False, True)
if not hasattr(controller.DataIndexInstrumController, "readVars"):
    dic = controller.DataIndexInstrumController
    dic.readVars, dic.readNextVars, dic.writeVars = dic.read_variables, dic.read_next_variables, dic.write_variables

from snmpsim.commands.responder_lite import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
